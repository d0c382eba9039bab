"""The command line: ``main`` (every subcommand but the lab's), ``lab`` (the spreadsheet lab's commands) and
``console`` (argument types, one-line errors, a stdout that survives a closed pipe). The only door that
knows everything."""
