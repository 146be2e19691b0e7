"""integrations/feishu"""
