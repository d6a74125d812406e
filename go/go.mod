module github.com/kvfeed/kvfeed/go

go 1.19
