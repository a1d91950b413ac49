VALUE = "from a bundled package"
