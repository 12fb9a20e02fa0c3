"""streamcoord: a streaming client for LLM chat APIs that never hangs, leaks or loses a word."""

from setuptools import setup

# The official SDKs the differential tests (tests/differential/) compare streamcoord with.
DIFFERENTIAL = ["openai>=1.40", "anthropic>=0.40", "google-genai>=1.0", "mistralai>=1.0", "ollama>=0.4"]
# Cloud providers: botocore signs Bedrock requests (SigV4, the AWS credential chain) and is
# the tests' oracle for the event stream decoder; google-auth finds Vertex AI credentials.
# botocore takes urllib3 2 only on Python 3.10+ (on 3.9 it pins urllib3<1.27, which our
# urllib3>=2.3 excludes): on 3.9 Bedrock works with Bedrock API keys only.
BEDROCK = ['botocore>=1.34; python_version>="3.10"']
VERTEX = ["google-auth>=2.20"]

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
        # OpenTelemetry GenAI spans and metrics (Client(telemetry=True), streamcoord.instrument()):
        # the API only; the application picks its SDK or distro and exporter.
        "otel": ["opentelemetry-api>=1.27"],
        # stream.events(): ToolCallDelta.partial_arguments parsed while the JSON streams in
        # (jiter's partial mode, as openai-python and anthropic use it).
        "partial-json": ["jiter>=0.5"],
        # Content-Encoding br and zstd (gzip and deflate need nothing).
        "compression": ["brotli>=1.1", "zstandard>=0.22"],
        # selenium drives Debian's chromium for the browser test of the examples; trustme
        # makes the local CA of the transport's HTTPS tests; pyte (a VT100 emulator) shows the
        # CLI tests the screen a user sees.
        "test": ["pytest>=7", "hypothesis>=6.82", "selenium>=4.10", "trustme>=1.1", "pyte>=0.8", "jiter>=0.5",
                 "opentelemetry-sdk>=1.27"] + DIFFERENTIAL + BEDROCK + VERTEX,
        "differential": DIFFERENTIAL,
        "bedrock": BEDROCK,
        "vertex": VERTEX,
    },
    entry_points={"console_scripts": ["streamcoord=streamcoord.__main__:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "License :: OSI Approved :: MIT License",
        "Typing :: Typed",
    ],
)
