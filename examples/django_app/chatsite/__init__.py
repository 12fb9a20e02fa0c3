"""A minimal Django project serving one chat page that streams answers over SSE."""
