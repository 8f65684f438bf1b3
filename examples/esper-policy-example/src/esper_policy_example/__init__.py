"""Example Esper policy plugin (see README "Write your own policy")."""
