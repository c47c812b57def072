// akvq-cli (placeholder until the public API lands).
#include <cstdio>
int main() { std::puts("akvq-cli"); return 0; }
