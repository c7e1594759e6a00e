"""Tests of the pure statistics package and the analyze command."""
