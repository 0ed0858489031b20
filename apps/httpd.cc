// usmp-httpd: an HTTP/1.1 server written in blocking style on usmp's I/O
// calls (interrupts/io.h), one green thread per connection.
//
//     usmp-httpd [--addr 127.0.0.1] [--port 8080] [--root DIR] [--cpus N]
//
// GET and HEAD only.  "/" answers "Hello, world!"; any other path is a file
// under --root (404 without --root).  Keep-alive as HTTP/1.1 says (1.0 only
// with "Connection: keep-alive"), pipelined requests are answered in order.
// Bad requests get a short plain-text error and the connection is closed:
// 400 (malformed, "..", NUL or a bad percent-escape in the path), 404, 405
// (other methods, with Allow), 413 (headers over 8 KiB or a body over
// 1 MiB), 501 (Transfer-Encoding), 505 (not HTTP/1.x).
//
// It prints "listening on ADDR:PORT" once ready (--port 0 picks a port).
// SIGINT / SIGTERM: the handler only writes the signal number to a pipe
// (async-signal-safe); a green thread reading that pipe interrupts the
// acceptors and every connection thread (thread_interrupt: their blocking
// calls return EINTR), waits for them, and the process exits with status 0.
#include <CLI/CLI.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "interrupts/io.h"
#include "runtime/machine.h"
#include "runtime/thread.h"
#include "sync/mutex.h"
#include "sync/sleep.h"
#include "sync/sleepqueue.h"

namespace io = usmp::io;
using namespace std::chrono_literals;

namespace {

constexpr size_t MAX_HEADER = 8192;
constexpr size_t MAX_BODY = 1 << 20;
constexpr std::string_view HELLO = "Hello, world!\n";

struct options {
	std::string addr = "127.0.0.1";
	int port = 8080;
	std::string root;
	int cpus = 0;
	int keepalive_s = 60;
};

options g_opt;
int g_sigpipe[2] = {-1, -1};
std::atomic<bool> g_stopping{false};

// The live connection threads and the acceptors, so that shutdown can
// interrupt them.  A thread removes itself under the lock before it ends,
// so every thread in the set is alive while the lock is held
// (thread_interrupt() needs a live thread).
usmp::mutex g_conns_mtx("httpd connections");
std::unordered_set<usmp::thread *> g_conns; // (g_conns_mtx)
int g_nconns = 0;                           // (g_conns_mtx) wakeup() on it at 0

void
on_signal(int sig)
{
	int saved = errno;
	unsigned char b = static_cast<unsigned char>(sig);
	ssize_t r = ::write(g_sigpipe[1], &b, 1);
	(void)r;
	errno = saved;
}

bool
send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t r = io::send(fd, p, n);
		if (r <= 0)
			return false;
		p += r;
		n -= static_cast<size_t>(r);
	}
	return true;
}

const char *
reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 413: return "Content Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 505: return "HTTP Version Not Supported";
	}
	return "Error";
}

const char *
content_type(std::string_view path)
{
	auto dot = path.rfind('.');
	std::string_view ext = dot == std::string_view::npos ? "" : path.substr(dot + 1);
	if (ext == "html" || ext == "htm") return "text/html; charset=utf-8";
	if (ext == "txt") return "text/plain; charset=utf-8";
	if (ext == "css") return "text/css";
	if (ext == "js") return "text/javascript";
	if (ext == "json") return "application/json";
	if (ext == "png") return "image/png";
	if (ext == "jpg" || ext == "jpeg") return "image/jpeg";
	if (ext == "gif") return "image/gif";
	if (ext == "svg") return "image/svg+xml";
	return "application/octet-stream";
}

// Header block of a response.
std::string
head(int status, const char *ctype, size_t length, bool keep_alive,
    const char *extra = "")
{
	char b[512];
	int n = std::snprintf(b, sizeof(b),
	    "HTTP/1.1 %d %s\r\nServer: usmp-httpd\r\nContent-Type: %s\r\n"
	    "Content-Length: %zu\r\nConnection: %s\r\n%s\r\n",
	    status, reason(status), ctype, length, keep_alive ? "keep-alive" : "close",
	    extra);
	return std::string(b, static_cast<size_t>(n));
}

// The hello responses, [keep-alive][HEAD], formatted once: the benchmark's
// path (GET /) formats and allocates nothing per request.
const std::string g_hello[2][2] = {
	{head(200, "text/plain; charset=utf-8", HELLO.size(), false) +
		std::string(HELLO),
	    head(200, "text/plain; charset=utf-8", HELLO.size(), false)},
	{head(200, "text/plain; charset=utf-8", HELLO.size(), true) +
		std::string(HELLO),
	    head(200, "text/plain; charset=utf-8", HELLO.size(), true)},
};

// An error response; the connection closes after it.
void
send_error(int fd, int status, const char *why, bool is_head = false)
{
	std::string body = std::to_string(status) + " " + reason(status) + ": " + why + "\n";
	std::string h = head(status, "text/plain; charset=utf-8", body.size(), false,
	    status == 405 ? "Allow: GET, HEAD\r\n" : "");
	if (!is_head)
		h += body;
	send_all(fd, h.data(), h.size());
}

bool
iequals(std::string_view a, std::string_view b)
{
	if (a.size() != b.size())
		return false;
	for (size_t i = 0; i < a.size(); i++)
		if (std::tolower(static_cast<unsigned char>(a[i])) !=
		    std::tolower(static_cast<unsigned char>(b[i])))
			return false;
	return true;
}

bool
contains_token(std::string_view v, std::string_view tok)
{
	size_t i = 0;
	while (i < v.size()) {
		size_t j = v.find(',', i);
		if (j == std::string_view::npos)
			j = v.size();
		std::string_view t = v.substr(i, j - i);
		while (!t.empty() && (t.front() == ' ' || t.front() == '\t'))
			t.remove_prefix(1);
		while (!t.empty() && (t.back() == ' ' || t.back() == '\t'))
			t.remove_suffix(1);
		if (iequals(t, tok))
			return true;
		i = j + 1;
	}
	return false;
}

int
hexval(char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

// Decode the path of the request target into a path relative to the root.
// Returns false for what must be refused (400): not origin-form, a bad
// escape, NUL, or a ".." segment (path traversal).
bool
decode_path(std::string_view target, std::string &out)
{
	if (target.empty() || target[0] != '/')
		return false;
	auto q = target.find_first_of("?#");
	if (q != std::string_view::npos)
		target = target.substr(0, q);
	out.clear();
	for (size_t i = 0; i < target.size(); i++) {
		char c = target[i];
		if (c == '%') {
			if (i + 2 >= target.size())
				return false;
			int h = hexval(target[i + 1]), l = hexval(target[i + 2]);
			if (h < 0 || l < 0)
				return false;
			c = static_cast<char>(h * 16 + l);
			i += 2;
		}
		if (c == '\0')
			return false;
		out.push_back(c);
	}
	// Segments: refuse "..", collapse "." and empty ones.
	std::string norm;
	size_t i = 0;
	while (i <= out.size()) {
		size_t j = out.find('/', i);
		if (j == std::string::npos)
			j = out.size();
		std::string_view seg(out.data() + i, j - i);
		if (seg == "..")
			return false;
		if (!seg.empty() && seg != ".") {
			norm += '/';
			norm.append(seg);
		}
		i = j + 1;
	}
	out = norm.empty() ? "/" : norm;
	return true;
}

// Serve a file under the root.  Returns false if the connection must close.
bool
serve_file(int fd, const std::string &rel, bool is_head, bool keep_alive)
{
	if (g_opt.root.empty()) {
		send_error(fd, 404, "no such file", is_head);
		return false;
	}
	// Refuse what resolves outside the root (a symbolic link out of it).
	std::string path = g_opt.root + rel;
	char *real = realpath(path.c_str(), nullptr);
	bool inside = real != nullptr &&
	    std::strncmp(real, g_opt.root.c_str(), g_opt.root.size()) == 0 &&
	    real[g_opt.root.size()] == '/';
	std::free(real);
	if (!inside) {
		send_error(fd, 404, "no such file", is_head);
		return false;
	}
	int f = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (f < 0 || fstat(f, &st) != 0 || !S_ISREG(st.st_mode)) {
		if (f >= 0)
			io::close(f);
		send_error(fd, 404, "no such file", is_head);
		return false;
	}
	std::string h = head(200, content_type(rel), static_cast<size_t>(st.st_size),
	    keep_alive);
	bool ok = true;
	if (is_head || st.st_size == 0) {
		ok = send_all(fd, h.data(), h.size());
	} else {
		// The header and the first block in one send.
		std::vector<char> buf(h.size() + 65536);
		std::memcpy(buf.data(), h.data(), h.size());
		off_t off = 0;
		size_t have = h.size();
		while (ok && off < st.st_size) {
			ssize_t r = io::pread(f, buf.data() + have, buf.size() - have, off);
			if (r <= 0) { // truncated under us: the length is a lie now
				ok = false;
				break;
			}
			off += r;
			ok = send_all(fd, buf.data(), have + static_cast<size_t>(r));
			have = 0;
		}
	}
	io::close(f);
	return ok;
}

// One connection: read requests, answer them, until close or error.
void
serve_connection(int fd)
{
	std::string in;
	in.reserve(4096);
	char buf[4096];
	const auto idle = std::chrono::seconds(g_opt.keepalive_s);
	for (;;) {
		// Read until the end of the header block.
		size_t end;
		while ((end = in.find("\r\n\r\n")) == std::string::npos) {
			if (in.size() > MAX_HEADER) {
				send_error(fd, 413, "request header too large");
				return;
			}
			ssize_t r = io::recv(fd, buf, sizeof(buf), 0, idle);
			if (r <= 0)
				return; // EOF, reset, idle timeout, or shutdown (EINTR)
			in.append(buf, static_cast<size_t>(r));
		}
		if (end > MAX_HEADER) {
			send_error(fd, 413, "request header too large");
			return;
		}
		std::string_view req(in.data(), end + 2);
		size_t eol = req.find("\r\n");
		std::string_view line = req.substr(0, eol);
		size_t sp1 = line.find(' ');
		size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
		if (sp1 == std::string_view::npos || sp2 == std::string_view::npos ||
		    line.find(' ', sp2 + 1) != std::string_view::npos || sp1 == 0 ||
		    sp2 == sp1 + 1) {
			send_error(fd, 400, "malformed request line");
			return;
		}
		std::string_view method = line.substr(0, sp1);
		std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
		std::string_view version = line.substr(sp2 + 1);
		if (version.size() != 8 || version.substr(0, 5) != "HTTP/" ||
		    version[6] != '.' || !std::isdigit(static_cast<unsigned char>(version[5])) ||
		    !std::isdigit(static_cast<unsigned char>(version[7]))) {
			send_error(fd, 400, "malformed HTTP version");
			return;
		}
		if (version[5] != '1') {
			send_error(fd, 505, "only HTTP/1.x is served");
			return;
		}
		bool http10 = version[7] == '0';
		bool is_head = method == "HEAD";
		// Headers.
		bool keep_alive = !http10, have_host = false, bad = false, chunked = false;
		size_t content_length = 0;
		size_t pos = eol + 2;
		while (pos < req.size()) {
			size_t e = req.find("\r\n", pos);
			std::string_view h = req.substr(pos, e - pos);
			pos = e + 2;
			size_t colon = h.find(':');
			if (colon == 0 || colon == std::string_view::npos ||
			    h.find_first_of(" \t") < colon) {
				bad = true;
				break;
			}
			std::string_view name = h.substr(0, colon), value = h.substr(colon + 1);
			while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
				value.remove_prefix(1);
			while (!value.empty() && (value.back() == ' ' || value.back() == '\t'))
				value.remove_suffix(1);
			if (iequals(name, "connection")) {
				if (contains_token(value, "close"))
					keep_alive = false;
				else if (contains_token(value, "keep-alive"))
					keep_alive = true;
			} else if (iequals(name, "host")) {
				have_host = true;
			} else if (iequals(name, "content-length")) {
				if (value.empty() || value.size() > 18 ||
				    value.find_first_not_of("0123456789") != std::string_view::npos) {
					bad = true;
					break;
				}
				content_length = std::strtoull(std::string(value).c_str(), nullptr, 10);
			} else if (iequals(name, "transfer-encoding")) {
				chunked = true;
			}
		}
		if (bad) {
			send_error(fd, 400, "malformed header field");
			return;
		}
		if (!http10 && !have_host) {
			send_error(fd, 400, "HTTP/1.1 requires Host");
			return;
		}
		if (chunked) {
			send_error(fd, 501, "Transfer-Encoding is not supported");
			return;
		}
		if (content_length > MAX_BODY) {
			send_error(fd, 413, "request body too large");
			return;
		}
		if (method != "GET" && !is_head) {
			send_error(fd, 405, "only GET and HEAD");
			return;
		}
		std::string rel;
		if (!decode_path(target, rel)) {
			send_error(fd, 400, "bad or forbidden path", is_head);
			return;
		}
		// Drop the request (and its body) from the buffer; what is left
		// is the next, pipelined request.
		size_t consumed = end + 4;
		while (in.size() < consumed + content_length) {
			ssize_t r = io::recv(fd, buf, sizeof(buf), 0, idle);
			if (r <= 0)
				return;
			in.append(buf, static_cast<size_t>(r));
		}
		in.erase(0, consumed + content_length);

		bool ok;
		if (rel == "/") {
			const std::string &r = g_hello[keep_alive][is_head];
			ok = send_all(fd, r.data(), r.size());
		} else {
			ok = serve_file(fd, rel, is_head, keep_alive);
		}
		if (!ok || !keep_alive)
			return;
	}
}

// Registration protocol: whoever creates a connection or acceptor thread
// counts it first (conn_expect, under the lock); the thread adds itself to
// the set when it starts and then checks g_stopping, under the lock; it
// leaves the set and the count before it ends.  Shutdown sets g_stopping,
// then, under the lock, interrupts every thread in the set and waits for
// the count to reach 0: a thread not yet in the set sees g_stopping.
void
conn_expect()
{
	std::lock_guard<usmp::mutex> g(g_conns_mtx);
	g_nconns++;
}

// Returns false if the server is stopping (the thread should end).
bool
conn_start()
{
	std::lock_guard<usmp::mutex> g(g_conns_mtx);
	g_conns.insert(usmp::curthread());
	return !g_stopping.load();
}

void
conn_end(bool in_set = true)
{
	std::lock_guard<usmp::mutex> g(g_conns_mtx);
	if (in_set)
		g_conns.erase(usmp::curthread());
	if (--g_nconns == 0)
		usmp::wakeup(&g_nconns);
}

void
acceptor(int ls)
{
	if (!conn_start()) {
		conn_end();
		return;
	}
	while (!g_stopping.load(std::memory_order_relaxed)) {
		int fd = io::accept(ls, nullptr, nullptr, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR)
				break;
			if (errno == EMFILE || errno == ENFILE || errno == ENOMEM ||
			    errno == ENOBUFS) {
				io::sleep(10ms); // out of descriptors: let some close
			}
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		conn_expect();
		usmp::thread *td;
		int e = usmp::thread_create(&td, {.name = "http conn", .detached = true},
		    [fd] {
			    if (conn_start())
				    serve_connection(fd);
			    io::close(fd);
			    conn_end();
		    });
		if (e != 0) {
			io::close(fd);
			conn_end(false);
		}
	}
	conn_end();
}

int
server_main()
{
	int ls = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sockaddr_storage ss{};
	socklen_t sl;
	in_addr a4{};
	in6_addr a6{};
	if (inet_pton(AF_INET, g_opt.addr.c_str(), &a4) == 1) {
		if (ls >= 0)
			::close(ls);
		ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		auto *s = reinterpret_cast<sockaddr_in *>(&ss);
		s->sin_family = AF_INET;
		s->sin_addr = a4;
		s->sin_port = htons(static_cast<uint16_t>(g_opt.port));
		sl = sizeof(*s);
	} else if (inet_pton(AF_INET6, g_opt.addr.c_str(), &a6) == 1) {
		auto *s = reinterpret_cast<sockaddr_in6 *>(&ss);
		s->sin6_family = AF_INET6;
		s->sin6_addr = a6;
		s->sin6_port = htons(static_cast<uint16_t>(g_opt.port));
		sl = sizeof(*s);
	} else {
		std::fprintf(stderr, "usmp-httpd: bad address %s\n", g_opt.addr.c_str());
		return 2;
	}
	int one = 1;
	if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(ls, reinterpret_cast<sockaddr *>(&ss), sl) != 0 || listen(ls, 1024) != 0) {
		std::fprintf(stderr, "usmp-httpd: cannot listen on %s:%d: %s\n",
		    g_opt.addr.c_str(), g_opt.port, std::strerror(errno));
		return 1;
	}
	sl = sizeof(ss);
	getsockname(ls, reinterpret_cast<sockaddr *>(&ss), &sl);
	int port = ss.ss_family == AF_INET ?
	    ntohs(reinterpret_cast<sockaddr_in *>(&ss)->sin_port) :
	    ntohs(reinterpret_cast<sockaddr_in6 *>(&ss)->sin6_port);

	// One acceptor per CPU, each bound to its CPU: new connections start
	// where they were accepted, and idle CPUs steal.
	int n = usmp::mp_ncpus();
	for (int c = 0; c < n; c++) {
		usmp::thread *td;
		usmp::thread_attr attr{.name = "http acceptor", .cpu = c, .detached = true};
		conn_expect();
		if (usmp::thread_create(&td, attr, [ls] { acceptor(ls); }) != 0) {
			std::fprintf(stderr, "usmp-httpd: cannot start acceptor %d\n", c);
			return 1;
		}
	}
	std::printf("listening on %s:%d\n", g_opt.addr.c_str(), port);
	std::fflush(stdout);

	// Wait for SIGINT / SIGTERM (the handler writes to the pipe).
	unsigned char sig = 0;
	for (;;) {
		ssize_t r = io::read(g_sigpipe[0], &sig, 1);
		if (r == 1)
			break;
		if (r < 0 && errno == EINTR)
			continue;
		std::fprintf(stderr, "usmp-httpd: signal pipe: %s\n", std::strerror(errno));
		break;
	}
	std::fprintf(stderr, "usmp-httpd: %s, shutting down\n", strsignal(sig));
	g_stopping.store(true);
	{
		// Every thread in the set is alive while the lock is held.
		std::lock_guard<usmp::mutex> g(g_conns_mtx);
		for (usmp::thread *td : g_conns)
			usmp::thread_interrupt(td);
		while (g_nconns > 0)
			usmp::msleep(&g_nconns, g_conns_mtx.lo(), 0, "httpd drain");
	}
	::close(ls);
	return 0;
}

} // namespace

int
main(int argc, char **argv)
{
	CLI::App app{"usmp-httpd: HTTP/1.1 on usmp green threads and io_uring"};
	app.add_option("--addr", g_opt.addr, "address to listen on")->capture_default_str();
	app.add_option("--port,-p", g_opt.port, "TCP port (0: any free port)")
	    ->capture_default_str()
	    ->check(CLI::Range(0, 65535));
	app.add_option("--root,-r", g_opt.root, "serve static files from this directory")
	    ->check(CLI::ExistingDirectory);
	app.add_option("--cpus,-c", g_opt.cpus, "CPUs of the machine (0: one per core)")
	    ->capture_default_str()
	    ->check(CLI::Range(0, 1024));
	app.add_option("--keepalive-timeout", g_opt.keepalive_s,
	       "seconds an idle keep-alive connection is kept")
	    ->capture_default_str()
	    ->check(CLI::Range(1, 86400));
	CLI11_PARSE(app, argc, argv);
	if (!g_opt.root.empty()) {
		char *rp = realpath(g_opt.root.c_str(), nullptr);
		if (rp == nullptr) {
			std::fprintf(stderr, "usmp-httpd: --root %s: %s\n", g_opt.root.c_str(),
			    std::strerror(errno));
			return 2;
		}
		g_opt.root = rp;
		std::free(rp);
		while (!g_opt.root.empty() && g_opt.root.back() == '/')
			g_opt.root.pop_back();
	}

	if (pipe2(g_sigpipe, O_CLOEXEC) != 0) {
		std::perror("usmp-httpd: pipe");
		return 1;
	}
	struct sigaction sa = {};
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, nullptr);
	sigaction(SIGTERM, &sa, nullptr);
	signal(SIGPIPE, SIG_IGN);

	return usmp::run({.ncpus = g_opt.cpus}, [] { return server_main(); });
}
