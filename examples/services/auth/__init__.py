"""The auth reference service: sign up, sign in, sign out, and who is signed in."""
