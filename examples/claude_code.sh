#!/usr/bin/env sh
# Register keyward with Claude Code as a stdio server. Claude Code starts it on demand and
# passes the key in the environment (never on the command line, where other users could see it).
# KEYWARD_API_KEY must hold a key created for this agent (key_create, or `keyward bootstrap`).
claude mcp add keyward --scope user --env KEYWARD_API_KEY="$KEYWARD_API_KEY" -- keyward serve --stdio
