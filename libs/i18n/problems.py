"""The details of the problems riders and partners meet, as templates in the ``problems`` catalogue.

A ``DomainError`` raised with ``says=Message(...)`` carries one of these; the problem it becomes has its
detail written in the reader's language (``libs/platform/http.py``). Problems only operators and
developers meet keep their English detail. Pure: no I/O."""
