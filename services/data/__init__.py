"""Files the installed package needs at run time (the Procfile, the scenarios).

In the checkout these are symbolic links to the files at the top of the repository, so there is
one copy; a wheel carries the files themselves (package data). Read them through
:mod:`services.resources`, never by a path relative to the checkout.
"""
