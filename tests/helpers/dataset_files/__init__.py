"""Tiny dataset files in each reader's format, written for the reader tests and the contract suite."""
