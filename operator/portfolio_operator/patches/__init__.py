"""Fix-ups this project loads into other projects' controllers, until their releases have the fix.

Each module checks, when it is imported, that the code it works around is still the code it was
written for: it retires itself (registers nothing) once the installed release has the upstream
fix, and stops the controller with a message if that code has changed beyond recognition.
"""
