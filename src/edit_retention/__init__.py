"""Edit retention study: does knowledge put in by a model editor survive fine-tuning?"""

__version__ = "0.1.0"
