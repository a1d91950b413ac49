"""A class with a web method that the tests deploy and look up by name."""

import firebox

app = firebox.App("test-web-cls-deployed")


@app.cls(scaledown_window=2)
class Greeter:
    greeting: str = firebox.parameter(default="deployed")

    @firebox.fastapi_endpoint()
    def greet(self, who: str = "hi"):
        return f"{self.greeting} {who}"
