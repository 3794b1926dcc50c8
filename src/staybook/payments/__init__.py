"""The payments context: payment provider protocol, sandbox provider, authorise/capture/refund, webhooks."""
