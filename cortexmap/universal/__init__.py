"""Universal dimensions across networks and their brain alignment (Chen & Bonner)."""
