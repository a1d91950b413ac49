"""A local package that reaches containers only through Image.add_local_python_source."""

VALUE = "from imghelper"
