import click

@click.group()
def main():
    """GemHub command line."""
