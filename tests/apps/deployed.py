"""An app that tests deploy and then call by name from other processes."""

import firebox

app = firebox.App("test-deployed")


@app.function()
def greet(name):
    print(f"greeting {name}")
    return f"hello {name}"


@app.cls()
class Greeter:
    greeting: str = firebox.parameter(default="hi")

    @firebox.enter()
    def load(self):
        self.suffix = "!"

    @firebox.method()
    def greet(self, name):
        return f"{self.greeting} {name}{self.suffix}"
