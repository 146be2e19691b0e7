"""Fake WeCom, DingTalk and Feishu servers on loopback, speaking their wire formats."""
