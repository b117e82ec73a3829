"""Runtime: load a device build, generate with llama.cpp, parse and validate tool calls."""
