// usmp-httpd end to end: start the server (USMP_HTTPD names the binary),
// fetch / and a static file over one keep-alive connection, check 404, 400,
// 405, 413 and 505 and path traversal, then SIGTERM: exit status 0.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

struct server {
	pid_t pid = -1;
	int port = 0;
	std::string root;

	server()
	{
		const char *bin = std::getenv("USMP_HTTPD");
		REQUIRE(bin != nullptr);
		char tmpl[] = "/tmp/usmp_httpd_root_XXXXXX";
		REQUIRE(mkdtemp(tmpl) != nullptr);
		root = tmpl;
		write_file(root + "/file.txt", "static content\n");
		REQUIRE(mkdir((root + "/sub").c_str(), 0755) == 0);
		write_file(root + "/sub/page.html", "<p>hi</p>");
		int out[2];
		REQUIRE(pipe(out) == 0);
		pid = fork();
		REQUIRE(pid >= 0);
		if (pid == 0) {
			dup2(out[1], 1);
			::close(out[0]);
			::close(out[1]);
			execl(bin, bin, "--port", "0", "--cpus", "2", "--root", root.c_str(),
			    static_cast<char *>(nullptr));
			_exit(127);
		}
		::close(out[1]);
		// "listening on 127.0.0.1:PORT\n"
		std::string line;
		char c;
		while (::read(out[0], &c, 1) == 1 && c != '\n')
			line.push_back(c);
		::close(out[0]);
		INFO("server said: " << line);
		auto colon = line.rfind(':');
		REQUIRE(line.rfind("listening on ", 0) == 0);
		REQUIRE(colon != std::string::npos);
		port = std::atoi(line.c_str() + colon + 1);
		REQUIRE(port > 0);
	}
	~server()
	{
		if (pid > 0) {
			kill(pid, SIGKILL);
			waitpid(pid, nullptr, 0);
		}
		std::system(("rm -rf '" + root + "'").c_str());
	}
	static void write_file(const std::string &p, const std::string &s)
	{
		FILE *f = std::fopen(p.c_str(), "w");
		REQUIRE(f != nullptr);
		std::fwrite(s.data(), 1, s.size(), f);
		std::fclose(f);
	}
	int connect_client() const
	{
		int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		REQUIRE(s >= 0);
		sockaddr_in a{};
		a.sin_family = AF_INET;
		a.sin_port = htons(static_cast<uint16_t>(port));
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		REQUIRE(::connect(s, reinterpret_cast<sockaddr *>(&a), sizeof(a)) == 0);
		return s;
	}
};

struct response {
	int status = 0;
	std::string headers, body;
	bool closed = false; // the server closed after it
};

void
send_str(int s, const std::string &m)
{
	REQUIRE(::send(s, m.data(), m.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(m.size()));
}

// Read one response (Content-Length framed); `buf` keeps what follows it.
response
read_response(int s, std::string &buf, bool head = false)
{
	response r;
	char b[4096];
	size_t end;
	while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
		ssize_t n = ::recv(s, b, sizeof(b), 0);
		REQUIRE(n > 0);
		buf.append(b, static_cast<size_t>(n));
	}
	r.headers = buf.substr(0, end + 2);
	REQUIRE(r.headers.rfind("HTTP/1.1 ", 0) == 0);
	r.status = std::atoi(r.headers.c_str() + 9);
	size_t cl = r.headers.find("Content-Length: ");
	REQUIRE(cl != std::string::npos);
	size_t len = head ? 0 : std::strtoul(r.headers.c_str() + cl + 16, nullptr, 10);
	buf.erase(0, end + 4);
	while (buf.size() < len) {
		ssize_t n = ::recv(s, b, sizeof(b), 0);
		REQUIRE(n > 0);
		buf.append(b, static_cast<size_t>(n));
	}
	r.body = buf.substr(0, len);
	buf.erase(0, len);
	return r;
}

// Send one request on a new connection; the answer, and whether the server
// then closed the connection.
response
one_shot(const server &srv, const std::string &req)
{
	int s = srv.connect_client();
	send_str(s, req);
	std::string buf;
	response r = read_response(s, buf);
	char c;
	r.closed = buf.empty() && ::recv(s, &c, 1, 0) == 0;
	::close(s);
	return r;
}

} // namespace

TEST_CASE("usmp-httpd serves, refuses, and stops on SIGTERM", "[unit]")
{
	server srv;

	SECTION("keep-alive: / then a static file then HEAD on one connection, pipelined too")
	{
		int s = srv.connect_client();
		std::string buf;
		send_str(s, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
		response a = read_response(s, buf);
		CHECK(a.status == 200);
		CHECK(a.body == "Hello, world!\n");
		CHECK(a.headers.find("Connection: keep-alive") != std::string::npos);
		send_str(s, "GET /file.txt HTTP/1.1\r\nHost: x\r\n\r\n");
		response b = read_response(s, buf);
		CHECK(b.status == 200);
		CHECK(b.body == "static content\n");
		CHECK(b.headers.find("Content-Type: text/plain") != std::string::npos);
		// Two pipelined requests in one packet.
		send_str(s, "HEAD /sub/page.html HTTP/1.1\r\nHost: x\r\n\r\n"
			    "GET /sub/./page.html HTTP/1.1\r\nHost: x\r\n\r\n");
		response c = read_response(s, buf, true);
		CHECK(c.status == 200);
		CHECK(c.headers.find("Content-Length: 9") != std::string::npos);
		response d = read_response(s, buf);
		CHECK(d.body == "<p>hi</p>");
		// Connection: close is honoured.
		send_str(s, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
		response e = read_response(s, buf);
		CHECK(e.status == 200);
		char ch;
		CHECK(::recv(s, &ch, 1, 0) == 0);
		::close(s);
	}

	SECTION("errors")
	{
		response r = one_shot(srv, "GET /nope.txt HTTP/1.1\r\nHost: x\r\n\r\n");
		CHECK(r.status == 404);
		r = one_shot(srv, "BLAH\r\n\r\n");
		CHECK(r.status == 400);
		CHECK(r.closed);
		r = one_shot(srv, "GET / HTTP/1.1\r\n\r\n"); // no Host
		CHECK(r.status == 400);
		r = one_shot(srv, "POST / HTTP/1.1\r\nHost: x\r\n\r\n");
		CHECK(r.status == 405);
		CHECK(r.headers.find("Allow: GET, HEAD") != std::string::npos);
		r = one_shot(srv, "GET / HTTP/2.0\r\nHost: x\r\n\r\n");
		CHECK(r.status == 505);
		r = one_shot(srv, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " +
			std::string(10000, 'a') + "\r\n\r\n");
		CHECK(r.status == 413);
		r = one_shot(srv, "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n");
		CHECK(r.status == 413);
		r = one_shot(srv, "GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n");
		CHECK(r.status == 400);
		r = one_shot(srv, "GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n");
		CHECK(r.status == 400);
		r = one_shot(srv, "GET /sub HTTP/1.1\r\nHost: x\r\n\r\n"); // a directory
		CHECK(r.status == 404);
	}

	// Every section ends here: SIGTERM with a keep-alive connection open
	// and idle; the server must interrupt it and exit 0.
	int idle = srv.connect_client();
	std::string buf;
	send_str(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
	CHECK(read_response(idle, buf).status == 200);
	REQUIRE(kill(srv.pid, SIGTERM) == 0);
	int status = 0;
	REQUIRE(waitpid(srv.pid, &status, 0) == srv.pid);
	srv.pid = -1;
	CHECK(WIFEXITED(status));
	CHECK(WEXITSTATUS(status) == 0);
	char c;
	CHECK(::recv(idle, &c, 1, 0) == 0); // the server closed it
	::close(idle);
}
