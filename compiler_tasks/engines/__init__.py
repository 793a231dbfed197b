"""Sass engines: what they share, the libsass child process, the Dart Sass compiler."""
