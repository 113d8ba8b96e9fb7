"""Task-distribution environments, installed as the package `rlmeta_envs`."""
