"""WeCom 智能机器人 (AI bot) over its long connection (PROTOCOLS §6, §9.3): no public URL."""
