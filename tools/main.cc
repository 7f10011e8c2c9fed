// Placeholder entry point while the CLI is being written; replaced next.
#include <cstdio>
int main() { std::puts("scratchcrypt: under construction"); return 1; }
