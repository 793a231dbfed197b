"""The Dart Sass engine: one long-lived ``sass --embedded`` compiler and its host side."""
