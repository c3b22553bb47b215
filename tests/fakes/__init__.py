"""In-process fakes of outside services (Microsoft Graph and Entra ID) served over real loopback HTTP."""
