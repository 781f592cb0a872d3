"""The configuration: every setting as a flag, an environment variable and a YAML path;
which accounts to watch with which credentials; validated once, at start-up."""
