"""OAuth 2.0 protocol logic, in modules named after what they implement."""
