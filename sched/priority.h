// Priorities (sys/priority.h): 0..255, a lower number is a better priority.
#pragma once

namespace usmp {

inline constexpr int PRI_MIN = 0;
inline constexpr int PRI_MAX = 255;

inline constexpr int PRI_MIN_ITHD = 0;   // interrupt threads 0-47
inline constexpr int PRI_MAX_ITHD = 47;
inline constexpr int PI_REALTIME = 0;    // clock
inline constexpr int PI_AV = 4;
inline constexpr int PI_NET = 8;
inline constexpr int PI_DISK = 12;
inline constexpr int PI_TTY = 16;
inline constexpr int PI_DULL = 20;
inline constexpr int PI_SOFT = 24;       // software interrupts

inline constexpr int PRI_MIN_REALTIME = 48; // realtime 48-79
inline constexpr int PRI_MAX_REALTIME = 79;

inline constexpr int PRI_MIN_KERN = 80;  // kernel 80-119
inline constexpr int PRI_MAX_KERN = 119;
inline constexpr int PSWP = 80, PVM = 84, PINOD = 88, PRIBIO = 92, PVFS = 96,
		     PZERO = 100, PSOCK = 104, PWAIT = 108, PLOCK = 112,
		     PPAUSE = 116;

inline constexpr int PRI_MIN_TIMESHARE = 120; // timeshare 120-223
inline constexpr int PRI_MAX_TIMESHARE = 223;
inline constexpr int PUSER = PRI_MIN_TIMESHARE;
// The priority of a green thread created without one.
inline constexpr int PRI_TIMESHARE_DEFAULT = PUSER;

inline constexpr int PRI_MIN_IDLE = 224; // idle 224-255
inline constexpr int PRI_MAX_IDLE = 255;

// Priority classes.
enum pri_class { PRI_ITHD = 1, PRI_REALTIME = 2, PRI_KERN = 3, PRI_TIMESHARE = 4, PRI_IDLE = 5 };

constexpr pri_class
pri_class_of(int pri) noexcept
{
	return pri <= PRI_MAX_ITHD       ? PRI_ITHD
	    : pri <= PRI_MAX_REALTIME    ? PRI_REALTIME
	    : pri <= PRI_MAX_KERN        ? PRI_KERN
	    : pri <= PRI_MAX_TIMESHARE   ? PRI_TIMESHARE
					 : PRI_IDLE;
}

// Run queues: 64 queues of 4 priorities each (RQ_NQS, RQ_PPQ).
inline constexpr int RQ_NQS = 64;
inline constexpr int RQ_PPQ = 4;

} // namespace usmp
