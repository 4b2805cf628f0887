"""Subcommands that do more than call one pipeline function (argument handling and printing only;
the work is done by the pipeline, :mod:`archspec.build`, :mod:`archspec.export` and
:mod:`archspec.diagram`)."""
