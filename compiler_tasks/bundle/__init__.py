"""Bundles: the source files of one submit, how they are collected, packed and read."""
