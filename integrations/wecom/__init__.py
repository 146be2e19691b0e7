"""integrations/wecom"""
