"""The identity context: users, credentials, tokens, MFA, roles, audit log, GDPR export/erasure."""
