"""Reference programs: each path of the system written plainly, measured beside it in the same run."""
