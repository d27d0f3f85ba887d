"""The local Azure and Azure DevOps simulator."""
