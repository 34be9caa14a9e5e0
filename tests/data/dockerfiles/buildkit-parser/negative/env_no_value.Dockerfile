FROM busybox

ENV PATH
