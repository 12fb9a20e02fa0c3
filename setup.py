"""streamcoord: a streaming client for LLM chat APIs that never hangs, leaks or loses a word."""

from setuptools import setup

# The official SDKs the differential tests (tests/differential/) compare streamcoord with.
DIFFERENTIAL = ["openai>=1.40", "anthropic>=0.40", "google-genai>=1.0", "mistralai>=1.0", "ollama>=0.4"]

setup(
    name="streamcoord",
    version="0.1.0",
    description="Stream chat answers from LLM providers to synchronous Python code, with recovery and metrics.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=["streamcoord", "adapters", "recovery_store"],
    package_data={"streamcoord": ["py.typed"], "adapters": ["py.typed"], "recovery_store": ["py.typed"]},
    install_requires=[
        "requests>=2.28",
        "urllib3>=2.3,<3",  # HTTPResponse.read1: hand over whatever the network delivered
        "tenacity>=8.2",
        "diskcache>=5.6",
    ],
    extras_require={
        "redis": ["redis>=4.5"],
        # The Django and Flask examples (examples/): waitress serves them; 3.0.1+ for its
        # security fixes, and it has channel_request_lookahead (noticing a browser that left).
        "web": ["flask>=2.3", "django>=4.2", "waitress>=3.0.1"],
        # selenium drives Debian's chromium for the browser test of the examples; pyte (a VT100
        # emulator) shows the CLI tests the screen a user sees.
        "test": ["pytest>=7", "hypothesis>=6.82", "selenium>=4.10", "pyte>=0.8"] + DIFFERENTIAL,
        "differential": DIFFERENTIAL,
    },
    entry_points={"console_scripts": ["streamcoord=streamcoord.__main__:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "License :: OSI Approved :: MIT License",
        "Typing :: Typed",
    ],
)
