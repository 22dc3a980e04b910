"""Command-line interface (Typer + Rich): parses input, calls the Workspace, formats output."""
