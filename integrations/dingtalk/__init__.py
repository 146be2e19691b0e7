"""integrations/dingtalk"""
