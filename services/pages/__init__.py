"""The rider's phone page and the partner's counter page: server-rendered HTML calling the JSON APIs."""
