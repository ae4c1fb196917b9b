"""vidu-pipe: storyboard-as-code for Vidu Q3 video generation."""

from __future__ import annotations

__version__ = "0.1.0"
