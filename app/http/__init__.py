"""The HTTP edge: routes, parameters, authentication, admission, errors, serving."""
