"""The SQL models (package data under sql/), their declarations and checks, and the build."""
