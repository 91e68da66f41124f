//! The HTTP servers: data plane and admin plane; maps every error to HTTP in one place.
