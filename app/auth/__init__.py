"""Sign-in methods other than personal access tokens (Microsoft Entra ID)."""
