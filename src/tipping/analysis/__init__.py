"""Analysis: run folders -> tables (tables.py) -> figures (plots.py), and an episode viewer (viewer.py).

The tables folder is the only interface between them: plots and the viewer read nothing else.
"""
