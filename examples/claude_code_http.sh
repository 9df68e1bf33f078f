#!/usr/bin/env sh
# Register a running keyward (HTTP) with Claude Code. The key travels in a header on every
# request; keyward checks it each time, so revoking it takes effect immediately.
# KEYWARD_API_KEY must hold a key created for this agent; KEYWARD_URL defaults to the local server.
KEYWARD_URL="${KEYWARD_URL:-http://127.0.0.1:19287/mcp}"
claude mcp add --transport http keyward "$KEYWARD_URL" --header "Authorization: Bearer $KEYWARD_API_KEY"
