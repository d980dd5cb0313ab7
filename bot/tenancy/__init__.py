"""Many Slack workspaces in one deployment: whose data is whose, and each one's installation."""
