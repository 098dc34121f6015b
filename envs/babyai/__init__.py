"""BabyAI levels from the `minigrid` package, played as text games (BabyAI-Text, after GLAM).

`describe` writes what the agent reads (its view, the mission, what its last
command did); `env` holds the environment: commands, reward, splits and the
minigrid glue. minigrid itself is imported only when an environment is made,
so importing this package (as `envs.checks` does for the error class) is cheap.
"""

from envs.babyai.env import LEVELS, BabyAIOptionsError, BabyAITextEnv

__all__ = ["LEVELS", "BabyAIOptionsError", "BabyAITextEnv"]
