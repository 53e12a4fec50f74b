from medvqa.data.sample import VQASample

__all__ = ["VQASample"]
