"""Declarative workload identity federation for Azure DevOps pipelines."""
