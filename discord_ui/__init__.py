"""Discord presentation shared by the cogs and bot.py: messages, status, delivery, buttons and forms.

Every message the bot sends goes through `discord_ui.messages`, where mentions are limited and lengths
capped. Nothing here imports bot.py or a cog; what a button needs from them comes in through a Protocol.
"""
